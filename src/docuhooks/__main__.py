from docuhooks.cli import main

main()
