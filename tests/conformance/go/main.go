// A client of golang.org/x/oauth2/clientcredentials against a live control plane: it gets a token
// with client_secret_basic (AuthStyleInHeader) and uses it through the package's HTTP client.
// Prints the access token on the first line, then the /v1/agents/me body.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func main() {
	ctx := context.Background()
	config := clientcredentials.Config{
		ClientID:     os.Getenv("CLIENT_ID"),
		ClientSecret: os.Getenv("CLIENT_SECRET"),
		TokenURL:     os.Getenv("TOKEN_URL"),
		Scopes:       []string{"decisions:create"},
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	token, err := config.Token(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "token:", err)
		os.Exit(1)
	}
	if token.TokenType != "Bearer" || token.Expiry.IsZero() {
		fmt.Fprintln(os.Stderr, "unexpected token:", token.TokenType, token.Expiry)
		os.Exit(1)
	}
	resp, err := config.Client(ctx).Get(os.Getenv("ME_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "me:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		fmt.Fprintln(os.Stderr, "me status:", resp.StatusCode, string(body))
		os.Exit(1)
	}
	fmt.Println(token.AccessToken)
	fmt.Println(string(body))
}
