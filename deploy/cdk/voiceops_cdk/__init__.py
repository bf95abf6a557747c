"""The voiceops AWS CDK app: one stack per boundary, composed in `voiceops_cdk.app.build`."""
