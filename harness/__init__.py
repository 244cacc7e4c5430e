"""feature-harness: compare automated-interpretability pipelines and score their feature descriptions.

Module convention: a package's API is what its `__init__` exports plus its unprefixed modules. A `_name.py`
module (or `_name/` package) is internal to the package that holds it and is never imported from another
package, a subpackage included; what others need, the package exports. Tests may import the internals of the
package they test. `harness.registry` names plugin implementations by "module:attribute" strings, internal
modules included: those are lookups on first use, not imports. A module no other package imports is internal,
so it has the `_`. tests/test_module_convention.py checks both ways.
"""

__version__ = "0.1.0"
