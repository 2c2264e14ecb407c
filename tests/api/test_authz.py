"""The authorization table, role by role and scope by scope (pure: no server)."""

from __future__ import annotations

import pytest

from kumo.api.authz import ACTIONS, Grant, Principal, Role, Scope, allowed, denial, visible_projects

ADMIN = Principal("ada", (Grant(Role.ADMIN),))
VIEWER = Principal("vic", (Grant(Role.VIEWER),))
PM = Principal("pam", (Grant(Role.PROGRAMME_MANAGER, programme="geniac"),))
MEMBER = Principal("mo", (Grant(Role.MEMBER, project="sakura"),))
NOBODY = Principal("nil")

# project sakura belongs to programme geniac; project tsubame to programme univ
OWN, OTHER = ("geniac", "sakura"), ("univ", "tsubame")
EXPECTED: dict[Scope, dict[str, tuple[bool, bool]]] = {  # scope -> principal -> (own, other)
    Scope.GLOBAL_READ: {"ada": (True, True), "vic": (True, True), "pam": (True, True), "mo": (True, True),
                        "nil": (False, False)},
    Scope.GLOBAL_WRITE: {"ada": (True, True), "vic": (False, False), "pam": (False, False), "mo": (False, False),
                         "nil": (False, False)},
    Scope.PROGRAMME_WRITE: {"ada": (True, True), "vic": (False, False), "pam": (True, False), "mo": (False, False),
                            "nil": (False, False)},
    Scope.PROJECT_READ: {"ada": (True, True), "vic": (True, True), "pam": (True, False), "mo": (True, False),
                         "nil": (False, False)},
    Scope.PROJECT_WRITE: {"ada": (True, True), "vic": (False, False), "pam": (True, False), "mo": (True, False),
                          "nil": (False, False)},
    Scope.SELF: {"ada": (True, True), "vic": (True, True), "pam": (True, True), "mo": (True, True),
                 "nil": (True, True)},
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("who", [ADMIN, VIEWER, PM, MEMBER, NOBODY], ids=lambda p: p.user)
def test_every_action_for_every_role(action: str, who: Principal) -> None:
    own, other = EXPECTED[ACTIONS[action]][who.user]
    assert allowed(who, action, *OWN) is own
    assert allowed(who, action, *OTHER) is other


def test_a_member_of_one_project_sees_only_it() -> None:
    projects = {"sakura": "geniac", "fuji": "geniac", "tsubame": "univ"}
    assert visible_projects(MEMBER, projects) == {"sakura"}
    assert visible_projects(PM, projects) == {"sakura", "fuji"}
    assert visible_projects(VIEWER, projects) is None and visible_projects(ADMIN, projects) is None


def test_denials_say_what_was_needed() -> None:
    assert denial(MEMBER, "jobs.cancel", *OTHER) == (
        "user 'mo' may not jobs cancel (submit or cancel a project's jobs): it needs admin, programme manager "
        "of 'univ' or member of 'tsubame'")
    assert denial(VIEWER, "nodes.write") == (
        "user 'vic' may not nodes write (change shared things): it needs the admin role")
