"""Static files on S3 under content-hashed names (``base.3f2a9c1b7d4e.css``), listed in ``staticfiles.json``.

A release uploads new names next to the old ones, so pages rendered by an old web task during a roll keep
pointing at files that still exist, pages of the new release never get a stale copy from CloudFront, and
CloudFront may cache every hashed name for as long as it likes.
"""

from __future__ import annotations

from django.contrib.staticfiles.storage import ManifestFilesMixin
from storages.backends.s3 import S3Storage


class ManifestS3Storage(ManifestFilesMixin, S3Storage):
    """collectstatic writes hashed copies and the manifest; `static()` looks names up in that manifest."""
