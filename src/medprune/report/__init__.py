"""medprune.report"""
