import types

import wanrecipe
from wanrecipe import errors, wire


def test_all_is_sorted_and_complete():
    assert wanrecipe.__all__ == sorted(wanrecipe.__all__)
    # The names are imported on first use: look at each one.
    public = {
        name
        for name in dir(wanrecipe)
        if not name.startswith("_")
        and not isinstance(getattr(wanrecipe, name), types.ModuleType)
        and name != "annotations"
    }
    assert public == set(wanrecipe.__all__) - {"__version__"}
    for name in wanrecipe.__all__:
        assert getattr(wanrecipe, name) is not None


def test_every_error_inherits_the_root():
    for name in dir(errors):
        obj = getattr(errors, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, Exception)
            and obj.__module__ == errors.__name__
        ):
            assert issubclass(obj, errors.WanRecipeError), name


def test_function_table_is_complete():
    assert set(wire.FUNCTION_PARAMS) == set(wire.FUNCTIONS) == set(wire.FUNCTION_SUMMARIES)
    for names in wire.FUNCTION_PARAMS.values():
        assert set(names) <= set(wire.PARAMS)


def test_diagnostic_format():
    d = errors.Diagnostic(
        "recipes/x.yaml",
        14,
        7,
        "steps.up.parameters.upscale_factor",
        "7 is greater than the maximum of 4",
        hint="use 1 to 4",
    )
    assert d.format() == (
        "recipes/x.yaml:14:7: error: steps.up.parameters.upscale_factor: "
        "7 is greater than the maximum of 4\n  hint: use 1 to 4"
    )
