"""Feature data: the native HDF5 format (reader, validation, fingerprint), importers, and the synthetic world.

    from tasks.data import open_world, FeatureFile, synthesize, ensure_world, PROFILES
"""
from .native import FeatureFile, NativeWriter
from .synth import PROFILES, profile_knobs, synthesize
from .world import H5Corpus, LocalWorld, ensure_world, open_world

__all__ = ["FeatureFile", "NativeWriter", "H5Corpus", "LocalWorld", "PROFILES", "ensure_world", "open_world",
           "profile_knobs", "synthesize"]
