from __future__ import annotations

import featureflag


def test_all_is_sorted_and_complete() -> None:
    exported = featureflag.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n[0].islower(), n))
    public = {
        name
        for name, value in vars(featureflag).items()
        if not name.startswith("_")
        and not isinstance(value, type(featureflag))
        and name != "annotations"  # from __future__
    }
    assert public == set(exported)


def test_every_public_name_has_a_docstring() -> None:
    for name in featureflag.__all__:
        obj = getattr(featureflag, name)
        if isinstance(obj, str):
            continue
        assert obj.__doc__, name


def test_errors_form_one_tree() -> None:
    for name in featureflag.__all__:
        obj = getattr(featureflag, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, featureflag.FeatureFlagError), name
