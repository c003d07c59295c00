//go:build tools

package durablews

import (
	_ "github.com/ThreeDotsLabs/watermill"
	_ "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	_ "github.com/rabbitmq/amqp091-go"
	_ "github.com/stretchr/testify/require"
	_ "go.uber.org/goleak"
	_ "github.com/go-stomp/stomp/v3"
	_ "github.com/coder/websocket"
	_ "github.com/chromedp/chromedp"
)
