"""The document-automation platform: templates, work items, interviews and assembly."""
