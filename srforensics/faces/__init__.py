"""Faces: detection and alignment (MTCNN), and later embedding backends."""

from __future__ import annotations


class NoFaceFound(Exception):
    """No face was detected; the record is reported with status ``no_face``, not as an error."""
