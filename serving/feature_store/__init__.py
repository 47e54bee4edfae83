"""Online feature stores for the transaction path (design: DESIGN.md beside this file)."""
