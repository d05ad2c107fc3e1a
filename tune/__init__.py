"""The one train loop, and the Ray Tune side around it: trainable, studies, experiments."""
