"""vistune.eval"""
