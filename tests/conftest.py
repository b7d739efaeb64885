"""Puts ``tests/`` on the import path (pytest's default import mode), so unit and integration tests
share the attack helpers that live here (:mod:`inversion`)."""
