"""User data: the user's script or cloud-config, composed with the parts ess needs.

Issue 15 fills this in: read ``user_data`` (a path or inline text), check it, and compose
it with ess's own parts (``lifetime.parts``) as one MIME multipart, never replacing it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: EC2's limit on user data, counted after base64 encoding.
MAX_USER_DATA = 16384


@dataclass(frozen=True)
class Part:
    """One part of a MIME multipart user data: ``text/x-shellscript``, ``text/cloud-config``..."""

    content: str
    content_type: str = "text/x-shellscript"
    filename: str = "part"
