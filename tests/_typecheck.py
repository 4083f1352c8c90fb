"""The runtime type checker that tests/conftest.py installs on `utils` (jaxtyping's import hook).

beartype with PEP 484's numeric tower, as static checkers read annotations: an `int` is a valid
`float` (`dead_mask(1_000_000)`), a `float` a valid `complex`.
"""

from beartype import BeartypeConf, beartype

typecheck = beartype(conf=BeartypeConf(is_pep484_tower=True))
