"""Training: learning-rate schedules and the trainer's building blocks."""
