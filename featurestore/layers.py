"""Hidden-state layers chosen and mixed on read.

A group stored with several hidden states (MERT with ``--mert-layers 6,8,12`` or ``all``) holds
arrays of dims ``("layer", "time", "feature")`` whose ``layer`` coordinate is the hidden-state
index (0 = the transformer's input, 12 = MERT-v1-95M's last layer). A group stored with one has
no ``layer`` dim; its group attributes name the index (``config.layers``, e.g. ``[12]``).
:class:`LayerChoice` turns the read options ``layers`` and ``reduce`` into one selection that
:meth:`~featurestore.read.StoreReader.load`, ``load_song``, ``pooled``, ``stack`` and
:class:`featurestore.torch.FeatureWindows` all apply the same way:

- ``layers=[6, 8]`` keeps those hidden states, by index value (not position), in the order
  given, as a ``layer`` dim (also on a group with one stored layer: the dims do not depend on how
  the group was stored);
- ``layers=8`` keeps one and drops the ``layer`` dim;
- ``reduce="mean"`` averages the chosen layers (all stored ones when ``layers`` is None) and
  ``reduce=[0.2, 0.8]`` weights them (one non-negative weight per chosen layer, normalised to
  sum 1); either drops the ``layer`` dim.

Reading several groups at once (``load_song``, ``FeatureWindows``), a single choice applies to
the groups stored with layers and leaves the others as they are; a mapping ``{group: ...}``
(for ``layers``, ``reduce`` or both) chooses for the groups it names (:func:`group_choices`).

Readers apply the choice after slicing in time, so a window reads and mixes only its frames. The
mix accumulates in float64 and is rounded to float32 once, at the end.
A layer the group does not hold raises ValueError naming the layers it holds.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import numpy as np

#: ``layers``: one hidden-state index (drops the dim) or several (keeps it), or None for all
Layers = Union[int, Sequence[int], None]
#: ``reduce``: "mean", one weight per chosen layer, or None to keep the layers apart
Reduce = Union[str, Sequence[float], None]

__all__ = ["LayerChoice", "Layers", "Reduce", "group_choices", "stored_layers"]


def stored_layers(attrs: Mapping[str, Any]) -> list[int] | None:
    """The hidden-state indices a group's (or an array's) attributes say it holds, in stored order.

    The ``layer`` coordinate when the dims have ``layer``; else the single index of
    ``config.layers`` (group attributes of a model stored with one layer); None for a group
    without layers (OpenL3, CREPE, madmom).
    """
    if "layer" in (attrs.get("dims") or ()):
        coords = (attrs.get("coords") or {}).get("layer")
        if coords is None:
            raise ValueError(f"{attrs.get('model', 'this group')!r} has a layer dim but no layer coordinate")
        return [int(i) for i in coords]
    configured = (attrs.get("config") or {}).get("layers")
    if isinstance(configured, list) and len(configured) == 1 and _is_index(configured[0]):
        return [int(configured[0])]
    return None


def _is_index(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class LayerChoice:
    """Which stored hidden states a read keeps, and whether (and how) it mixes them."""

    #: the group, for messages
    group: str
    #: the hidden-state indices the group holds, in stored order
    stored: tuple[int, ...]
    #: the indices chosen, in the order asked
    layers: tuple[int, ...]
    #: normalised mixing weights (one per chosen layer, summing to 1), or None to keep a ``layer`` dim
    weights: tuple[float, ...] | None
    #: one index was asked as an int: its values without a ``layer`` dim
    single: bool

    @classmethod
    def resolve(cls, group: str, stored: Sequence[int] | None, layers: Layers, reduce: Reduce) -> "LayerChoice | None":
        """The choice ``layers``/``reduce`` make on a group holding ``stored`` (:func:`stored_layers`);
        None when both are None (the arrays as stored).

        Raises ValueError for a layer the group does not hold (naming those it holds), a group
        without layers, repeated layers, an unknown ``reduce``, or weights that are not one
        finite, non-negative value per chosen layer with a positive sum.
        """
        if layers is None and reduce is None:
            return None
        if stored is None:
            raise ValueError(f"{group!r} stores no hidden-state layers; leave layers and reduce unset")
        single = _is_index(layers)
        if layers is None:
            chosen = tuple(stored)
        elif single:
            chosen = (int(layers),)  # type: ignore[arg-type]
        elif isinstance(layers, Sequence) and not isinstance(layers, str) and layers and all(map(_is_index, layers)):
            chosen = tuple(int(i) for i in layers)
        else:
            raise ValueError(f"layers must be a hidden-state index or a non-empty list of them, not {layers!r}")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"layers {list(chosen)} repeat an index")
        missing = [i for i in chosen if i not in stored]
        if missing:
            raise ValueError(f"{group!r} stores layers {list(stored)}; {', '.join(map(str, missing))} "
                             f"{'is' if len(missing) == 1 else 'are'} not among them")
        return cls(group, tuple(stored), chosen, _weights(reduce, len(chosen)), single)

    @property
    def keeps_dim(self) -> bool:
        """Whether the result has a ``layer`` dim (several chosen and not mixed)."""
        return self.weights is None and not self.single

    def apply(self, data: Any, dims: Sequence[str]) -> tuple[Any, tuple[str, ...]]:
        """``data`` (a numpy or dask array with ``dims``, already sliced in time) with the choice applied,
        and its dims: ``layer`` kept (the chosen ones, in order) or dropped (one layer, or the mix).

        A mix is computed in float64 and returned as float32; a selection keeps the dtype.
        """
        dims = tuple(dims)
        if "layer" not in dims:  # one layer stored: a list gives it a layer dim, anything else is it as it is
            if not self.keeps_dim:
                return data, dims
            return data[None], ("layer",) + dims
        axis = dims.index("layer")
        positions = [self.stored.index(i) for i in self.layers]
        before = (slice(None),) * axis
        if self.weights is None and self.single:
            return data[before + (positions[0],)], dims[:axis] + dims[axis + 1:]
        if positions != list(range(len(self.stored))):
            data = data[before + (positions,)]
        if self.weights is None:
            return data, dims
        shape = [len(positions) if d == axis else 1 for d in range(len(dims))]
        mixed = (data.astype(np.float64) * np.asarray(self.weights, dtype=np.float64).reshape(shape)).sum(axis=axis)
        return mixed.astype(np.float32), dims[:axis] + dims[axis + 1:]

    def attrs(self) -> dict[str, Any]:
        """What the choice records on a returned array: ``layers`` and, for a mix, ``layer_weights``."""
        out: dict[str, Any] = {"layers": list(self.layers)}
        if self.weights is not None:
            out["layer_weights"] = list(self.weights)
        return out


def group_choices(stored: Mapping[str, Sequence[int] | None], layers: Layers | Mapping[str, Layers],
                  reduce: Reduce | Mapping[str, Reduce]) -> dict[str, LayerChoice]:
    """The choice of ``layers``/``reduce`` for each of several groups (``stored``: group -> its
    :func:`stored_layers`), for the groups they apply to: those a mapping names (the other option,
    when not a mapping, applies to them too), else those stored with layers. Empty when both are None;
    ValueError when they are given and apply to none of the groups, or as :meth:`LayerChoice.resolve`."""
    if layers is None and reduce is None:
        return {}
    named = [set(option) for option in (layers, reduce) if isinstance(option, Mapping)]
    choices = {}
    for group, held in stored.items():
        if named and not any(group in names for names in named):
            continue
        if not named and held is None:
            continue
        choice = LayerChoice.resolve(group, held, layers.get(group) if isinstance(layers, Mapping) else layers,
                                     reduce.get(group) if isinstance(reduce, Mapping) else reduce)
        if choice is not None:
            choices[group] = choice
    if not choices:
        raise ValueError(f"layers/reduce apply to none of {list(stored)} (groups stored with layers: "
                         f"{[g for g, held in stored.items() if held is not None] or 'none'})")
    return choices


def _weights(reduce: Reduce, n: int) -> tuple[float, ...] | None:
    """Normalised weights for ``n`` chosen layers: equal for "mean", the given ones divided by their sum."""
    if reduce is None:
        return None
    if isinstance(reduce, str):
        if reduce != "mean":
            raise ValueError(f'reduce must be "mean" or one weight per layer, not {reduce!r}')
        return (1.0 / n,) * n
    try:
        weights = [float(w) for w in reduce]
    except (TypeError, ValueError):
        raise ValueError(f'reduce must be "mean" or one weight per layer, not {reduce!r}') from None
    if len(weights) != n:
        raise ValueError(f"reduce has {len(weights)} weights for {n} layer{'s' if n != 1 else ''}")
    total = math.fsum(weights)
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not total > 0:
        raise ValueError(f"layer weights must be finite, non-negative and not all zero, not {weights}")
    return tuple(w / total for w in weights)
