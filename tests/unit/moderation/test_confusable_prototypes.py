"""The packed TR39 prototypes the bot reads at start-up are what confusable-homoglyphs's data gives."""

from __future__ import annotations

from importlib.resources import files

from bot.moderation.normalize import (
    PROTOTYPES_RESOURCE,
    confusable_prototypes,
    derive_confusable_prototypes,
    pack_confusable_prototypes,
)


def test_packed_prototypes_match_the_installed_confusables_data() -> None:
    derived = derive_confusable_prototypes()
    packed = files("bot.moderation").joinpath(PROTOTYPES_RESOURCE).read_text("ascii")
    # When this fails after upgrading confusable-homoglyphs: `python -m bot.moderation.normalize`.
    assert packed == pack_confusable_prototypes(derived)
    assert confusable_prototypes() == derived
    assert len(derived) > 6000 and derived["\u0430"] == "a" and derived["m"] == "rn"
