"""Runwatch's database layer: settings, engine, tables, queries and migrations."""
