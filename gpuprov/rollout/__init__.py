"""Staged rollouts: plan waves (planner), record them (state), run them (runner)."""
