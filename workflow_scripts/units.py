"""The analysis units of a study: what one score of the statistics stands for.

A unit is a task of ``tasks:``, or a task group of ``analysis.task_groups`` whose score is the
mean of its member tasks' scores (the paper reports ARC as the mean of ARC-Easy and
ARC-Challenge); a task that is a member of a group is not a unit of its own. ``analysis.primary``
pre-registers the comparison: the units of each category (``reasoning``, ``pattern``) that the
primary test is made on; every other unit is exploratory.

``analysis`` only feeds the statistics: it is in no cell's training spec and no evaluation's
params, so writing or changing it retrains and re-evaluates nothing.
"""

from __future__ import annotations

from .config_schema import ConfigError

CATEGORIES = ("reasoning", "pattern")


def _groups(analysis: dict | None) -> dict[str, list[str]]:
    return dict((analysis or {}).get("task_groups") or {})


def _primary(analysis: dict | None) -> dict[str, list[str]]:
    return dict((analysis or {}).get("primary") or {})


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"config error at {key}: {message}")


def check_analysis(tasks: dict, analysis: dict | None) -> None:
    """Refuse an ``analysis`` section that does not name its units unambiguously, naming the
    key and the fix (a :class:`ConfigError`)."""
    groups, primary = _groups(analysis), _primary(analysis)
    known = ", ".join(tasks)
    group_of: dict[str, str] = {}
    for name, members in groups.items():
        key = f"analysis.task_groups.{name}"
        if name in tasks:
            _fail(key, f"{name!r} is also a task of `tasks:`; give the group another name (e.g. {name}_mean).")
        for member in members:
            if member in groups:
                _fail(key, f"{member!r} is a task group; groups do not nest, list its member tasks instead.")
            if member not in tasks:
                _fail(key, f"{member!r} is not a task of this study; name tasks of `tasks:` ({known}).")
            if members.count(member) > 1:
                _fail(key, f"{member!r} is listed twice; list each member task once.")
            if member in group_of:
                _fail(
                    key,
                    f"the task {member!r} is already a member of the group {group_of[member]!r}; "
                    "a task belongs to at most one group: remove it from one of them.",
                )
            group_of[member] = name
        if len(set(members)) < 2:
            _fail(key, f"a group has at least 2 member tasks, {name!r} has {len(set(members))}; add one, or remove it.")
    seen: dict[str, str] = {}
    for category, units in primary.items():
        key = f"analysis.primary.{category}"
        if category not in CATEGORIES:
            _fail(key, f"{category!r} is not a category; the primary comparison has {' and '.join(CATEGORIES)}.")
        if not units:
            _fail(key, "no units; name at least one task or task group, or remove the category.")
        for unit in units:
            if unit not in tasks and unit not in groups:
                _fail(
                    key,
                    f"{unit!r} is neither a task nor a task group of this study; name one of "
                    f"{', '.join([*tasks, *groups])}.",
                )
            if unit in seen:
                where = "twice" if seen[unit] == category else f"under both {seen[unit]} and {category}"
                _fail(key, f"{unit!r} is listed {where}; a unit has one place in the primary comparison.")
            seen[unit] = category
    for unit in seen:
        if unit in group_of:
            group = group_of[unit]
            both = group in seen
            _fail(
                f"analysis.primary.{seen[unit]}",
                f"{unit!r} is a member of the task group {group!r}"
                + (", which is listed too" if both else ", which is the unit its score belongs to")
                + f"; list the group {group!r}, not its member tasks.",
            )
    for name, members in groups.items():
        if name in seen:
            continue
        categories = {tasks[m]["category"] for m in members}
        if len(categories) > 1:
            _fail(
                f"analysis.task_groups.{name}",
                f"its member tasks have different categories ({', '.join(sorted(categories))}) and the group is "
                "not in analysis.primary, which would give it one; give the members one category in `tasks:`, or "
                f"list {name!r} under analysis.primary.",
            )


def resolve_units(tasks: dict, analysis: dict | None) -> list[dict]:
    """The study's analysis units in a stable order: the primary ones (reasoning, then pattern,
    each in config order), then the exploratory ones in ``tasks:`` order (a group where its
    first member is). Each: ``{"unit", "tasks" (member task names), "category", "role"}``."""
    check_analysis(tasks, analysis)
    groups, primary = _groups(analysis), _primary(analysis)
    group_of = {m: name for name, members in groups.items() for m in members}

    def unit(name: str, category: str | None, role: str) -> dict:
        members = list(groups.get(name, [name]))
        if category is None:  # the members' common category (check_analysis made sure of it)
            category = tasks[members[0]]["category"]
        return {"unit": name, "tasks": members, "category": category, "role": role}

    out = [unit(name, category, "primary") for category in CATEGORIES for name in primary.get(category, [])]
    done = {u["unit"] for u in out}
    for task in tasks:
        name = group_of.get(task, task)
        if name not in done:
            out.append(unit(name, None, "exploratory"))
            done.add(name)
    return out
