"""What each agent command asks, which tools it gets, how its result is shaped."""
