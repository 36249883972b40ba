"""vistune.data_prep"""
