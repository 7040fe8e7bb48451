"""Per-message CPU cost of moderation's normalize() on realistic 200-character messages (timeit)."""

from __future__ import annotations

import timeit
from functools import partial

from bot.moderation.normalize import normalize

MESSAGES: dict[str, str] = {
    "plain English": (
        "Hey everyone, quick update on the **raid tonight**: we start at 9pm sharp, bring potions and "
        "check the pinned notes in #planning. If you can't make it, ping me so I can find a sub. Thanks!"
    ),
    "accents and emoji": (
        "Salut à tous 👋 ce soir on fait la soirée jeux, ça commence à 21h. Pensez à prendre des "
        "boissons 🍕🎮 et n'oubliez pas: pas de spoilers ||fin du jeu|| svp, merci beaucoup à vous !!"
    ),
    "Korean": (
        "안녕하세요 여러분, 오늘 저녁 9시에 레이드를 시작합니다. 포션을 꼭 챙겨 오시고 고정된 메시지를 "
        "확인해 주세요. 참석이 어려우신 분은 미리 알려 주시면 대체 인원을 찾겠습니다. 감사합니다! "
        "다들 즐거운 하루 보내세요."
    ),
    "hostile (zalgo, joiners, Cyrillic)": (
        "y\u0337o\u0336u\u0335 a\u0334r\u0338e a F\u034fL\u2066A\u2069G\u180bM\u3164E and fl\u0430gme "
        "F||L||AGME " * 4
    )[:200],
}


def main() -> None:
    normalize("warm up: é")  # loads the confusables table once per process
    for name, text in MESSAGES.items():
        runs = 2000
        seconds = min(timeit.repeat(partial(normalize, text), number=runs, repeat=5))
        print(f"{name:38s} {len(text):4d} chars  {seconds / runs * 1e6:7.1f} µs/message")


if __name__ == "__main__":
    main()
