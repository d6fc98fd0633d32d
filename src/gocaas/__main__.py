from gocaas.cli.app import main

main()
