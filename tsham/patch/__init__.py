"""Multivariate patch encoder with channel identity and roles."""

from tsham.patch.encoder import ChannelRole, PatchConfig, PatchEncoder, channel_identity, patchify

__all__ = ["ChannelRole", "PatchConfig", "PatchEncoder", "channel_identity", "patchify"]
