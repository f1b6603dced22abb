"""batch-provisioner: onboard many TikTok Ads advertiser groups into Fivetran from a sheet."""

from __future__ import annotations

__version__ = "0.1.0"
SERVICE = "tiktok_ads"

__all__ = ["SERVICE", "__version__"]
