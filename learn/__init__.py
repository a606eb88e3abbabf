"""Training and cross-validation of the learned judgement (agent/judgement.py) over labelled sources."""
