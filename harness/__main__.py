from harness._entry import main

raise SystemExit(main())
