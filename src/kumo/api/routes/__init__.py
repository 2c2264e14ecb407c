"""One router per resource: ``nodes`` (regions, clusters, nodes), ``tenancy`` (programmes, projects,
cohorts, queues, users, members), ``tokens``, ``jobs``, ``usage`` and ``audit``.

Every route names one action of :data:`kumo.api.authz.ACTIONS` through :func:`kumo.api.deps.require`,
reads and writes only through the store's repositories, and appends every change it makes to the
audit log in the same transaction.
"""
