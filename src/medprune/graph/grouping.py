"""From propagated labels to :class:`PruningGroup` objects.

Labels are merged into connected components (one component = one removable channel). Components
that appear in exactly the same parameter dimensions (and share their pinned state) form one
group, ordered by their position in the group's first producer. GroupNorm adds a block
constraint: a group may only lose whole GroupNorm groups (``channel_multiple = C / num_groups``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from medprune.graph.group import ActivationSite, ChannelSlice, PruningGroup
from medprune.graph.propagate import State

__all__ = ["PositionMap", "Grouping", "make_groups", "removal_table"]

#: A key names at most this many producers (a transformer's residual stream couples dozens).
MAX_KEY_PARTS = 4

NORM_KINDS = ("batch_norm", "instance_norm", "group_norm", "native_batch_norm", "native_group_norm")


@dataclass(frozen=True)
class PositionMap:
    """For every position of one labelled dimension: its group index and group channel (-1: none)."""

    group: np.ndarray
    channel: np.ndarray

    def removed(self, flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Boolean mask of removed positions, given ``flat[offsets[g] + c]`` = channel ``c`` of
        group ``g`` is removed (see :func:`removal_table`)."""
        mask = np.zeros(self.group.size, dtype=bool)
        valid = self.group >= 0
        mask[valid] = flat[offsets[self.group[valid]] + self.channel[valid]]
        return mask


def removal_table(sizes: list[int], prune: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(flat, offsets)``: one flag per channel of every group, True where removed."""
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    flat = np.zeros(int(offsets[-1]), dtype=bool)
    for g, idx in prune.items():
        flat[offsets[g] + idx] = True
    return flat, offsets


@dataclass
class Grouping:
    """Groups plus the position maps surgery and cost estimation use."""

    groups: list[PruningGroup]
    tensor_maps: dict[tuple[str, int], PositionMap]
    module_maps: list[tuple[str, str, PositionMap]]
    cost_maps: list[tuple[int, tuple[PositionMap, ...]]]


def _components(state: State) -> np.ndarray:
    n = state.n_labels
    if not state.edges:
        return np.arange(n)
    rows = np.concatenate([a for a, _ in state.edges])
    cols = np.concatenate([b for _, b in state.edges])
    adj = coo_matrix((np.ones(rows.size, dtype=bool), (rows, cols)), shape=(n, n))
    _, comp = connected_components(adj, directed=False)
    return comp


def make_groups(state: State, model: nn.Module) -> Grouping:
    """Build the groups of ``model`` from a finished propagation ``state``."""
    comp = _components(state)
    n_comp = int(comp.max()) + 1 if comp.size else 0
    reason = np.full(n_comp, None, dtype=object)
    for labels, why in state.pins:
        cs = comp[labels]
        reason[cs[reason[cs] == None]] = why  # noqa: E711 - numpy elementwise
    inexact = np.zeros(n_comp, dtype=bool)
    for labels, zero in state.consumers:
        inexact[comp[labels[~zero]]] = True

    known = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    dims = [(k, td) for k, td in state.tensor_dims.items() if td.fqn in known]
    specs = _component_classes(comp, [td.labels for _, td in dims], reason != None)  # noqa: E711

    group_of = np.full(n_comp, -1, dtype=np.int64)
    rank_of = np.full(n_comp, -1, dtype=np.int64)
    for g, ((slices, _), comps) in enumerate(specs):
        primary_comps = comp[dims[_primary(dims, slices)][1].labels]
        uniq, first_pos = np.unique(primary_comps, return_index=True)
        at = np.minimum(np.searchsorted(uniq, comps), uniq.size - 1)
        key = np.where(uniq[at] == comps, first_pos[at], 0)
        ordered = comps[np.argsort(key, kind="stable")]
        group_of[ordered] = g
        rank_of[ordered] = np.arange(len(ordered))
    multiple, gn_reason = _gn_constraints(state, comp, group_of, rank_of, len(specs))
    tensor_maps = {
        key: PositionMap(group_of[comp[td.labels]], rank_of[comp[td.labels]]) for key, td in dims
    }
    groups = []
    for g, ((slices, pinned), comps) in enumerate(specs):
        why = reason[comps[0]] if pinned else gn_reason.get(g)
        groups.append(
            _build_group(g, len(comps), dims, slices, tensor_maps, why, multiple.get(g, 1))
        )
        groups[-1].zero_exact = not inexact[comps].any()
    module_maps = []
    for path, kind, labels in state.module_dims:
        module_maps.append((path, kind, PositionMap(group_of[comp[labels]], rank_of[comp[labels]])))
    cost_maps = [
        (base, tuple(PositionMap(group_of[comp[a]], rank_of[comp[a]]) for a in arrays))
        for base, arrays in state.costs
    ]
    _fix_bad_slices(groups)
    _add_sites(groups, module_maps, model)
    _assign_keys(groups, dims)
    return Grouping(groups, tensor_maps, module_maps, cost_maps)


#: Above this many cells (components x widest signature) classes are found with a dict instead.
_MAX_SIGNATURE_CELLS = 20_000_000


def _component_classes(
    comp: np.ndarray,
    dim_labels: list[np.ndarray],
    pinned: np.ndarray,
    max_cells: int = _MAX_SIGNATURE_CELLS,
) -> list[tuple[tuple[tuple[int, ...], bool], np.ndarray]]:
    """Components that appear in exactly the same tensor dimensions, with the same pinned state.

    Args:
        comp: component of every label ``(n_labels,)``.
        dim_labels: labels of each tensor dimension (its index is the "slice" number).
        pinned: bool per component ``(n_comp,)``.
        max_cells: size limit of the vectorised path.

    Returns:
        ``((slices, pinned), comps)`` per class: ``slices`` the sorted slice numbers, ``comps``
        the member components in ascending order; classes sorted by (first slice, smallest
        component). Components in no dimension belong to no class.
    """
    if not dim_labels:
        return []
    n_dims = len(dim_labels)
    sizes = [labels.size for labels in dim_labels]
    pairs = comp[np.concatenate(dim_labels)] * n_dims  # (component, slice), sorted and unique
    pairs = np.sort(pairs + np.repeat(np.arange(n_dims, dtype=np.int64), sizes))
    pairs = pairs[_starts(pairs)]
    c_all, s_all = np.divmod(pairs, n_dims)
    comps, start, count = np.unique(c_all, return_index=True, return_counts=True)
    if comps.size == 0:
        return []
    flags = pinned[comps].astype(np.int64)
    width = int(count.max())
    if comps.size * (width + 1) > max_cells:
        by_key: dict[tuple[tuple[int, ...], bool], list[int]] = {}
        for i in range(comps.size):
            slices = tuple(s_all[start[i] : start[i] + count[i]].tolist())
            by_key.setdefault((slices, bool(flags[i])), []).append(i)
        members = [np.asarray(v, dtype=np.int64) for v in by_key.values()]
        reps = np.asarray([v[0] for v in members], dtype=np.int64)
    else:  # one row per component: its slices padded with -1, then its pinned flag
        table = np.full((comps.size, width + 1), -1, dtype=np.int64)
        row = np.repeat(np.arange(comps.size), count)
        table[row, np.arange(c_all.size) - start[row]] = s_all
        table[:, width] = flags
        order = np.lexsort(table.T[::-1])  # rows in lexicographic order, ties by position
        first = _starts(table[order])
        reps = order[first]  # the first (smallest) component of each class
        inverse = np.empty(comps.size, dtype=np.int64)
        inverse[order] = np.cumsum(first) - 1
        by_class = np.argsort(inverse, kind="stable")
        members = np.split(by_class, np.cumsum(np.bincount(inverse, minlength=reps.size))[:-1])
    first_slice = s_all[start[reps]]
    classes = []
    for k in np.lexsort((reps, first_slice)).tolist():
        r = int(reps[k])
        slices = tuple(s_all[start[r] : start[r] + count[r]].tolist())
        classes.append(((slices, bool(flags[r])), comps[members[k]]))
    return classes


def _starts(rows: np.ndarray) -> np.ndarray:
    """Bool ``(n,)``: True where a sorted array's element (or 2D array's row) differs from the
    previous one, i.e. the first of each run of equal values."""
    out = np.ones(rows.shape[0], dtype=bool)
    if rows.shape[0] > 1:
        diff = rows[1:] != rows[:-1]
        out[1:] = diff.any(axis=1) if rows.ndim == 2 else diff
    return out


def _primary(dims: list, slices: tuple[int, ...]) -> int:
    for s in slices:
        if dims[s][1].role == "out":
            return s
    return slices[0]


def _gn_constraints(
    state: State, comp: np.ndarray, group_of: np.ndarray, rank_of: np.ndarray, n_groups: int
) -> tuple[dict[int, int], dict[int, str]]:
    multiple: dict[int, int] = {}
    bad: dict[int, str] = {}
    for path, labels, m in state.gn_blocks:
        cs = comp[labels]
        gs = group_of[cs]
        for g in np.unique(gs):
            g = int(g)
            if g < 0:
                continue
            sel = np.nonzero(gs == g)[0]
            ranks = rank_of[cs[sel]]
            size = int((group_of == g).sum())
            ok = (
                sel.size == size
                and sel.size % m == 0
                and np.array_equal(np.sort(ranks), np.arange(size))
                and all(
                    np.all(ranks[i : i + m] // m == ranks[i] // m)
                    and sel[i] % m == 0
                    and sel[i + m - 1] == sel[i] + m - 1
                    for i in range(0, sel.size, m)
                )
                and multiple.get(g, m) == m
            )
            if ok:
                multiple[g] = m
            else:
                bad[g] = f"GroupNorm {path!r} groups do not line up with the channel group"
    return multiple, bad


def _build_group(
    g: int,
    n: int,
    dims: list,
    slices: tuple[int, ...],
    maps: dict[tuple[str, int], PositionMap],
    why: str | None,
    multiple: int,
) -> PruningGroup:
    members = []
    for s in slices:
        key, td = dims[s]
        pm = maps[key]
        pos = np.nonzero(pm.group == g)[0]
        order = np.lexsort((pos, pm.channel[pos]))
        pos = pos[order]
        k = pos.size // n if n else 0
        index = torch.as_tensor(pos, dtype=torch.int64)
        index = index.reshape(n, k) if k * n == pos.size and k > 0 else index.reshape(-1, 1)
        module_name, _, tensor_name = td.fqn.rpartition(".")
        members.append(ChannelSlice(module_name, tensor_name, td.dim, index, td.role))
    group = PruningGroup(
        key=f"g{g}",
        n_channels=n,
        slices=tuple(members),
        prunable=why is None,
        pinned_reason=why,
        channel_multiple=multiple,
        min_channels=multiple,
    )
    return group


def _fix_bad_slices(groups: list[PruningGroup]) -> None:
    for group in groups:
        if any(s.index.shape[0] != group.n_channels for s in group.slices) and group.prunable:
            group.prunable = False
            group.pinned_reason = "channel copies of uneven multiplicity"


def _add_sites(
    groups: list[PruningGroup], module_maps: list[tuple[str, str, PositionMap]], model: nn.Module
) -> None:
    modules = dict(model.named_modules(remove_duplicate=False))
    norm_sites: dict[int, list[ActivationSite]] = defaultdict(list)
    for path, kind, pm in module_maps:
        if kind not in NORM_KINDS or path not in modules:
            continue
        for g in np.unique(pm.group[pm.group >= 0]):
            sel = np.nonzero(pm.group == g)[0]
            order = np.argsort(pm.channel[sel], kind="stable")
            if sel.size == groups[g].n_channels:
                norm_sites[int(g)].append(
                    ActivationSite(path, torch.as_tensor(sel[order], dtype=torch.int64), "norm")
                )
    for g, group in enumerate(groups):
        sites = []
        for s in group.members("out", "weight"):
            module = modules.get(s.module_name)
            if s.index.shape[1] == 1 and isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                sites.append(ActivationSite(s.module_name, s.index[:, 0].clone(), "producer"))
        group.sites = tuple(sites + norm_sites.get(g, []))


def _assign_keys(groups: list[PruningGroup], dims: list) -> None:
    sizes = {
        (td.fqn.rpartition(".")[0], td.fqn.rpartition(".")[2], td.dim): td.labels.size
        for _, td in dims
    }
    seen: dict[str, int] = {}
    for group in groups:
        outs = group.members("out")
        chosen = [s for s in outs if s.tensor_name == "weight"] or outs or list(group.slices)
        parts, seen_mod = [], set()
        for s in chosen:
            if s.module_name in seen_mod:
                continue
            seen_mod.add(s.module_name)
            tag = "out" if s.role == "out" else "in" if s.role == "in" else "ch"
            size = sizes.get((s.module_name, s.tensor_name, s.dim), 0)
            flat = s.index.reshape(-1)
            suffix = ""
            if flat.numel() != size:
                lo, hi = int(flat.min()), int(flat.max()) + 1
                contiguous = hi - lo == flat.numel()
                suffix = f"[{lo}:{hi}]" if contiguous else f"@{int(flat[0])}"
            parts.append(f"{s.module_name or '<root>'}.{tag}{suffix}")
        key = "+".join(parts[:MAX_KEY_PARTS])
        if len(parts) > MAX_KEY_PARTS:
            key += f"+{len(parts) - MAX_KEY_PARTS}more"
        if key in seen:
            seen[key] += 1
            key = f"{key}#{seen[key]}"
        else:
            seen[key] = 1
        group.key = key
        names = [p.split(".out")[0] for p in parts]
        norms = sorted({s.module_name for s in group.members("per_channel")})
        ins = sorted({s.module_name for s in group.members("in")})
        shown = "+".join(names[:MAX_KEY_PARTS]) + (
            f"+{len(names) - MAX_KEY_PARTS} more" if len(names) > MAX_KEY_PARTS else ""
        )
        desc = f"{shown}.out ({group.n_channels} ch)"
        if norms:
            desc += " -> " + ", ".join(norms)
        if ins:
            desc += " -> " + ", ".join(f"{m}.in" for m in ins[:MAX_KEY_PARTS])
            desc += f", +{len(ins) - MAX_KEY_PARTS} more" if len(ins) > MAX_KEY_PARTS else ""
        group.description = desc
