"""batch-provisioner: onboard many TikTok Ads advertiser groups into Fivetran from a sheet."""

from __future__ import annotations

from batch_provisioner.models import SERVICE
from batch_provisioner.settings import VERSION as __version__

__all__ = ["SERVICE", "__version__"]
