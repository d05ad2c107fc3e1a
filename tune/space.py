"""Search spaces given as data, e.g. {"lr": {"type": "loguniform", "low": 1e-5, "high": 0.1}}.

Types: loguniform and uniform (floats, low < high), int (inclusive bounds, low <= high; add
"log": true for a log scale) and choice ("values": a non-empty list).
"""
REQUIRED = {"loguniform": ("low", "high"), "uniform": ("low", "high"), "int": ("low", "high"), "choice": ("values",)}


def validate_space(space: dict, where: str = "space") -> None:
    """Raise ValueError naming the first thing wrong with `space`."""
    if not isinstance(space, dict) or not space:
        raise ValueError(f"{where}: must be a non-empty mapping of name -> distribution")
    for name, dist in space.items():
        at = f"{where}.{name}"
        if not isinstance(dist, dict) or dist.get("type") not in REQUIRED:
            raise ValueError(f"{at}: needs a 'type' among {', '.join(REQUIRED)}")
        missing = [key for key in REQUIRED[dist["type"]] if key not in dist]
        if missing:
            raise ValueError(f"{at}: missing {', '.join(missing)}")
        if dist["type"] == "choice":
            if not isinstance(dist["values"], list) or not dist["values"]:
                raise ValueError(f"{at}: values must be a non-empty list")
            continue
        low, high = dist["low"], dist["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise ValueError(f"{at}: low and high must be numbers, got {low!r} and {high!r}")
        if dist["type"] == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise ValueError(f"{at}: int bounds must be integers, got {low} and {high}")
        if low > high or (low == high and dist["type"] != "int"):
            raise ValueError(f"{at}: low ({low}) must be below high ({high})")
        if (dist["type"] == "loguniform" or dist.get("log")) and low <= 0:
            raise ValueError(f"{at}: a log scale needs low > 0, got {low}")


def to_tune(space: dict) -> dict:
    """The Ray Tune domains for a validated data space."""
    from ray import tune as ray_tune

    domains = {}
    for name, dist in space.items():
        kind = dist["type"]
        if kind == "loguniform":
            domains[name] = ray_tune.loguniform(dist["low"], dist["high"])
        elif kind == "uniform":
            domains[name] = ray_tune.uniform(dist["low"], dist["high"])
        elif kind == "int":  # Tune's integer upper bounds are exclusive; ours are inclusive
            sampler = ray_tune.lograndint if dist.get("log") else ray_tune.randint
            domains[name] = sampler(int(dist["low"]), int(dist["high"]) + 1)
        else:
            domains[name] = ray_tune.choice(dist["values"])
    return domains


def to_optuna(space: dict) -> dict:
    """The Optuna distributions for a validated data space (int bounds inclusive in both)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    distributions = {}
    for name, dist in space.items():
        kind = dist["type"]
        if kind == "choice":
            distributions[name] = CategoricalDistribution(dist["values"])
        elif kind == "int":
            distributions[name] = IntDistribution(int(dist["low"]), int(dist["high"]), log=bool(dist.get("log")))
        else:
            distributions[name] = FloatDistribution(dist["low"], dist["high"], log=kind == "loguniform")
    return distributions
