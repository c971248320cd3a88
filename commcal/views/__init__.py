"""Views: turn library results into tables, JSON and Markdown. Nothing here decides anything."""
