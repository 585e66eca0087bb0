"""Example unibench plugin: its folder holds the method's card (`linear_vq.yaml`) beside its code."""
