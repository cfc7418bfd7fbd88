"""{{ cookiecutter.project_name }}.

{{ cookiecutter.description | wordwrap(90) }}
"""

__version__ = "0.1.0"
