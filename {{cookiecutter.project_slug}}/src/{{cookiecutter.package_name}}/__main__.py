"""`python -m {{ cookiecutter.package_name }}`: the same commands as the console script."""

from {{ cookiecutter.package_name }}.cli import main

raise SystemExit(main())
