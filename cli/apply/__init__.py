"""`gpuprov apply`: the command (command.py) and the staged rollout it drives (staged.py)."""
