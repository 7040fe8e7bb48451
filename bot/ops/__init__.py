"""Running and operating the bot: the runner, the runtime, the setup check and the invite URL."""
