# voiceops — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
REQS   := $(wildcard requirements/*.txt)

.PHONY: run test venv lint format clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "voiceops needs Python >= 3.11 (set PYTHON=python3.x)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when a requirements file changes.
$(VENV)/.installed: $(BIN)/python $(REQS)
	$(BIN)/pip install --quiet -r requirements/dev.txt
	@touch $@

venv: $(VENV)/.installed

run: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runbridge --host 127.0.0.1 --port $(PORT)

test: venv
	@if [ -z "$$DATABASE_URL" ]; then echo "DATABASE_URL unset: tests run on SQLite; PostgreSQL-only tests are skipped (reasons below)."; fi
	@if [ -z "$$REDIS_URL" ]; then echo "REDIS_URL unset: tests use the in-memory channel layer; Redis tests are skipped (reasons below)."; fi
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .

format: venv
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles .test-db.sqlite3
