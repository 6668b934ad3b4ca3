"""KerasTuner search over tinymnist's filter counts under a parameter budget."""
