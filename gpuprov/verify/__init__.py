"""`gpuprov verify` and the rollout health gates: verdicts (pure, on parsed data) and the
node probe that reads what they judge."""
