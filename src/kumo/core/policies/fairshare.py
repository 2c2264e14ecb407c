"""Hierarchical fair share (programme -> project), weighted dominant-resource share.

Within a project, jobs go by priority, then submission time. Across projects and programmes the
cycle interleaves jobs so that the entity with the lowest weighted share goes next; the share is
recomputed after every start (see :mod:`kumo.core.fairshare`).
"""

from __future__ import annotations

from kumo.core.policies.basic import StrictPriority


class FairShare(StrictPriority):
    name = "fair-share"
    fair_share = True
