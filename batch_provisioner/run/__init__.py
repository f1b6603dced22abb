"""Stage 2: plan, apply and the lifecycle operations on a run."""
