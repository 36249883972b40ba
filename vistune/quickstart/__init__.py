"""vistune.quickstart: the main job, end to end on the embedded tiny default."""
