"""The in-process federation: the FLARE executor's sites and client algorithms under one server loop."""
