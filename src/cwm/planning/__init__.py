"""Planning with a Code World Model: MCTS for discrete actions, CEM for continuous ones, in the real env."""
