from bem.cli import main

raise SystemExit(main())
