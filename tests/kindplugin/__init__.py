"""Group kinds defined outside qgen, as a user would add one (see test_kind_plugin.py)."""
