"""What the bot keeps about people: /forget and the retention purge, through handlers each domain registers."""
