"""medprune.measure"""
