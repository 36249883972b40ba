"""vistune.train"""
