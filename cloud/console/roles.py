"""Who may do what in the console, as a table (admin ⊃ engineer ⊃ viewer)."""

from cloud.storage.console import Role

PERMISSIONS: dict[str, frozenset[Role]] = {
    "view": frozenset({"admin", "engineer", "viewer"}),
    "acknowledge_alerts": frozenset({"admin", "engineer"}),
    "issue_coupons": frozenset({"admin"}),
    "manage_users": frozenset({"admin"}),
    "view_audit": frozenset({"admin"}),
}


def can(role: Role, permission: str) -> bool:
    """True when `role` holds `permission` (an unknown permission is nobody's)."""
    return role in PERMISSIONS.get(permission, frozenset())
